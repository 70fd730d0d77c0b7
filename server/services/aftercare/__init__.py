"""After approval (A8, A9, A17.6, A26): the callback, account opening, and notices."""
