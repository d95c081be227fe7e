"""Collection trucks and their positioning terminals."""
