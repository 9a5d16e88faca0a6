-- The warehouse's schemas: staging (canonical events), core (steps, sessions,
-- journeys), marts (business answers), meta (runs and settings), views (for analysts).
create schema if not exists staging;
create schema if not exists core;
create schema if not exists marts;
create schema if not exists meta;
create schema if not exists views;
