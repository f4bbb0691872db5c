"""interp-grok."""
