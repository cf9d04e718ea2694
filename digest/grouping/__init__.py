"""Grouping articles by world region, theme and story."""
