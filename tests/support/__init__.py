"""Test-only servers that the system packages cannot provide (see each module)."""
