"""One-way video witnessing (A18): the investor records alone; the server checks liveness,
the face and the statement's quality from the live frames it receives."""
