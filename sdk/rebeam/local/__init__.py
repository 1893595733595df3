"""The local backend: ``rebeam run`` — supervision trees as OS processes on one machine."""
