"""What one model family needs that the generic call does not know: one module a family, keyed by
its pipeline class or the parameters only its pipelines take (Helios' pyramid steps, FramePack's
sections, LTX-2's conditions)."""
