"""Readers of the file formats pyvm2 understands: each turns a file into plain data with the position of every value."""
