"""`python -m bench.lists`: blocklists at scale (issue 5); see bench/lists/README.md."""
