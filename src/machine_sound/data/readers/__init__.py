"""Dataset layouts, one reader per option of config group `data`: mimii (also read for synthetic), dcase2020,
folder. A reader only lists recordings as an `Index` (`data/records.py`); it never loads or splits them."""
