-- ppm's state: the training runs and the versioned PPM registry.
-- Documents are kept as the JSON text the file store writes (not jsonb): a stored PPM is
-- verified against its sha256 byte for byte, and run records may hold NaN, which jsonb refuses.

-- One row per run: its result, written once, and its latest failure while it has no result.
-- The primary key is what makes recording exactly-once: a retried or duplicated Job's INSERT
-- conflicts with the first, whichever replica it reaches.
CREATE TABLE ppm_runs (
    experiment text NOT NULL,
    run_id text NOT NULL,
    result text,
    failure text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment, run_id),
    CHECK (result IS NOT NULL OR failure IS NOT NULL)
);

-- Version N of a model is v<N>-<first 8 of sha256>; N counts up per model.
CREATE TABLE ppm_model_versions (
    model text NOT NULL,
    number integer NOT NULL CHECK (number > 0),
    version text NOT NULL,
    artifact text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, number),
    UNIQUE (model, version)
);

-- The version "" resolves to; without a row, the latest.
CREATE TABLE ppm_promoted (
    model text PRIMARY KEY,
    version text NOT NULL,
    FOREIGN KEY (model, version) REFERENCES ppm_model_versions (model, version)
);
