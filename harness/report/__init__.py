"""Stage 6: what a run leaves behind. results.jsonl, summaries, JUnit, HTML
and the console lines.
"""
