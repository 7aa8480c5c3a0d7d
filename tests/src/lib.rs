//! Harness for virtual Pi boots.
