"""`make bench`: the pair measured against this machine's own ceilings (see README, Performance)."""
