"""Transfer backends: a small interface (base.py) and the Globus and local backends.

Backends never touch the database; the site's workers translate between the two.
"""
