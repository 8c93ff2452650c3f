"""tether.llm."""
