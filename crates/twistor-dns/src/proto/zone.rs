//! One zone's records and the lookups an authoritative server makes.
