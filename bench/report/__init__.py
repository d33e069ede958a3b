"""Reports built from stored results: leaderboard tables in several formats, and plots."""

from bench.report.leaderboard import ResultRow, leaderboard_cells, leaderboard_frame, plot, render

__all__ = ["ResultRow", "leaderboard_cells", "leaderboard_frame", "plot", "render"]
