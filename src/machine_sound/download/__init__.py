"""Download the real datasets (MIMII, DCASE Task 2 2020-2025) from their public records, verified and unpacked
where `data=mimii`, `data=dcase2020` and `data=dcase` read them: `catalog` (which files, checksums), `fetch`
(resumed, verified downloads through pooch), `unpack` (whole folders or none, and the destination's record),
`get` (archive by archive under the destination's lock), `check` (the reader reads them back), `cli` (the
command)."""
