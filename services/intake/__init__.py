"""The intake service: photos, reports, grids and weekly grid summaries."""
