"""Where do the clips come from, and which does each SuperNode hold?"""
