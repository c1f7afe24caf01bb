"""Small command-line helpers over the three packages (bench, plots, reports)."""
