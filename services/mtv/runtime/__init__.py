"""What every service process shares: settings, JSON logging, metrics and health, lifecycle."""
