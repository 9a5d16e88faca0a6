-- Law: every input row of the run is loaded, a duplicate or quarantined. Returns breaking files.
select
    'rows_accounted' as law,
    source as segment,
    source_file as node,
    format('{} rows read, {} loaded + {} duplicates + {} quarantined', rows_read, loaded, duplicates, quarantined) as numbers
from meta.ingest_files
where run_id = (select max(run_id) from meta.ingest_files)
  and rows_read <> loaded + duplicates + quarantined;
