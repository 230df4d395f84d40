"""hyperhive: a swarm of Claude Code agents on one host, with a human operator in control."""

__version__ = "0.1.0"
