"""Minimal Flower app for the test harness."""
