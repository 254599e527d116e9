"""Built-in entropy coders; ``common`` holds what the coders share."""
