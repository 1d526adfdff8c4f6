"""`make reproduce`: the papers' grids as data (grids/*.toml), a resumable launcher and the summary."""
