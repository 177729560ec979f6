"""What the server tells its operator: structured logs with their context.

The lowest layer: every other package may import it; it imports none of ours.
"""
