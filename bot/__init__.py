"""chorus: a Discord voice companion."""
