"""Test, benchmark and demo support that ships with the product."""
