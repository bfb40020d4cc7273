"""The cases domain: the Case aggregate, its state machine, deadlines. No transport."""
