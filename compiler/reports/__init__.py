"""Views of a check run: JSON first; text, SARIF, GitHub annotations and JUnit from it."""
