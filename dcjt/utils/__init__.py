"""Small helpers with no project knowledge: atomic files, worker pools."""
