"""Analysis of recordings and trained policies: what messages carry (game analysis to come)."""
