"""The ``medimg`` command-line interface (nothing else imports this package)."""
