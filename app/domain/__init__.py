"""Pure logic: no boto, no faust imports.  Unit-tested without services."""
