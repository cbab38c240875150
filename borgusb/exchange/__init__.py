"""The Shell/Doge exchange without I/O: signed orders (order.py), the deterministic book
(book.py) and the atomic swap that settles a fill (swap.py). The cell is `borgusb.cells.btrader`."""
