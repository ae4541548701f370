// Anchor for the shared precompiled header (see cmake/LddpmTargets.cmake).
