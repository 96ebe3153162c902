"""The pure core of mldht: no sockets, no clock reads, no module-level randomness.

Time (``now``) and random number generators are passed in by the caller.
"""
