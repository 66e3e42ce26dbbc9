"""Destinations for drift reports: files, metric stores and alert channels."""
