"""The example shop: one page that uses all three cache regions."""
