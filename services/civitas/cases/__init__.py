"""cases: residents' requests from intake to follow-up (一门受理、全程代办)."""
