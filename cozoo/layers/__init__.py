"""Building blocks shared by the regular and continual models."""
