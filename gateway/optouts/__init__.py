"""Opt-outs: the keyword matcher (STOP/START/HELP), the opt-out registry every MT is checked
against, and the intake policy that enforces it.

`keywords` is pure (text in, match out); `registry` keeps the list in memory with the store as
the truth; `policy` is the `PolicyCheck` intake runs for every channel.
"""
