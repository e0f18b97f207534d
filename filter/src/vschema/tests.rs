//! Tests of the VSchema against Vitess example documents.
