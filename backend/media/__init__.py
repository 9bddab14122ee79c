"""Media input: streaming readers for video files and image folders."""
