"""How do the server and the nodes work together? Strategy, messages, round records, privacy,
personal heads and resumption."""
