"""All SQL lives here: one module per aggregate, methods named for intent; they flush, never commit."""
