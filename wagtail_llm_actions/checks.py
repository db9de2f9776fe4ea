"""Django system checks."""
