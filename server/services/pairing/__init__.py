"""Pairing (A7, A17.3): the queue, eligible witnesses, offers, and placing a witness
session on a media node with a token per party."""
