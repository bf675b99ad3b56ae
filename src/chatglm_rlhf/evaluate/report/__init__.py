"""The run report: one page for every profile (page.py), its sections (sections.py, judged.py,
ablations.py), HTML helpers (html.py) and plots (plots.py)."""
