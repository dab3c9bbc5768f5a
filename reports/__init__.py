"""Leaderboard reports read from the result store (issue "Reports")."""
