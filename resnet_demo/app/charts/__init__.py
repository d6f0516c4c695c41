"""Every figure the app draws, by topic: `curves` (training histories, Fig. 6), `testset` (per-class accuracy,
the confusion matrix), `predictions` (a prediction's top five), `inside` (the Inside page, Fig. 7), `fool` (attacks and
accuracy under attack). `style` is the one look they share."""
