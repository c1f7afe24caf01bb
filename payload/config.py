"""The payload's configuration (one YAML file, `payload run --config payload.yaml`).

Each section is its own model so that an error names the exact field. Defaults are what a
nadir-mounted camera on a small multirotor surveying at 30 m would want.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from payload.backends.registry import BackendName
from payload.configio import StrictModel, load_config
from payload.demfile import check_dem
from payload.keyfile import read_signing_key
from payload.sitefile import load_site


class ModelSection(StrictModel):
    """Which model bundle to run and on what."""

    bundle: Path = Field(description="folder written by `make edgetpu` (model_card.json inside)")
    backend: BackendName = "auto"
    device: str | None = Field(
        default=None, description="Edge TPU to use: usb, usb:N, pci, pci:N, :N; empty = first found"
    )
    num_threads: int = Field(default=2, ge=1, le=64)


class SourceSection(StrictModel):
    """Where frames come from."""

    kind: Literal["opencv", "folder"] = "opencv"
    uri: str = Field(
        default="0", description="V4L2 index or device path, RTSP/HTTP URL or video file (opencv); folder path"
    )
    rate_hz: float | None = Field(default=None, gt=0, description="folder: frames per second when no time is known")
    time_from: Literal["exif", "filename", "rate"] = "exif"
    realtime: bool = Field(
        default=False,
        description="folder or video file: true = replay at the recorded pace (stale frames dropped as live); "
        "false = classify every frame, as fast as the classifier goes",
    )
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)
    stall_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="opencv live camera or stream: a read that has not returned after this long is a stall (a USB "
        "camera wedged in its driver, a stream that stopped sending); it is counted and logged and the camera "
        "reopened. Must be longer than the camera's frame interval",
    )


class TilingSection(StrictModel):
    """How a frame is cut into tiles for the classifier."""

    rows: int = Field(default=3, ge=1, le=32)
    cols: int = Field(default=4, ge=1, le=32)
    overlap: float = Field(default=0.0, ge=0.0, lt=0.9)
    stagger: bool = Field(default=True, description="every second frame, cols - 1 columns centred on the seams "
                          "of the others: ground beside a patch gets seen without it (docs/MAPS.md)")


class SchedulerSection(StrictModel):
    """Threads, queues and statistics."""

    max_rate_hz: float | None = Field(default=None, gt=0, description="cap on frames classified per second")
    queue_size: int = Field(default=64, ge=1, le=100000)
    stats_interval_s: float = Field(default=10.0, gt=0)


class OutputSection(StrictModel):
    """Where records go."""

    dir: Path = Path("flight_output")
    records: str = Field(default="classifications.jsonl", description="JSONL file of per-frame, per-tile results")


class SigningSection(StrictModel):
    """MAVLink 2 message signing on the telemetry link (payload/vehicle/telemetry.py; the autopilot holds the same key).

    With it, packets that are unsigned or signed with another key are dropped before anything reads
    them, so a forged packet carrying our vehicle's system id is not believed, and every packet the
    payload sends is signed (an autopilot with signing on ignores unsigned ones).
    """

    key_format: Literal["auto", "raw", "hex", "passphrase"] = Field(
        default="auto", description="how key_file holds the key; auto: 64 hex digits, 32 raw bytes, or a passphrase"
    )
    key_file: Path = Field(
        description="file holding the secret key: 32 raw bytes, 64 hex digits, or a passphrase whose SHA-256 is "
        "the key (MAVProxy's `signing setup <passphrase>`); relative paths are from the working directory; chmod 600"
    )
    link_id: int = Field(
        default=1,
        ge=0,
        le=255,
        description="link id in our signatures; the autopilot tracks timestamps per (link_id, source_system, "
        "source_component), so no other signer (a GCS) may share all three",
    )
    allow_unsigned: bool = Field(
        default=False,
        description="also accept unsigned packets (while moving a fleet to signing): NO spoofing protection; "
        "wrongly signed packets are still dropped and our packets still signed",
    )

    @field_validator("key_file")
    @classmethod
    def _key_file_holds_a_key(cls, v: Path, info) -> Path:  # noqa: ANN001 - pydantic's ValidationInfo
        """Resolve the path and read the key now, so a bad key file is a config error, not a mid-flight one."""
        path = v.expanduser().absolute()
        read_signing_key(path, info.data.get("key_format", "auto"))
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            logging.getLogger(__name__).warning(
                "telemetry.signing.key_file %s can be read or written by every user (mode %s): anyone on the "
                "companion computer can sign as the vehicle; chmod 600 %s", path, oct(stat.S_IMODE(mode)), path
            )
        return path


class OriginSection(StrictModel):
    """A site's EKF origin on Earth, for when the autopilot does not send GPS_GLOBAL_ORIGIN."""

    lat: float = Field(ge=-90.0, le=90.0, description="degrees WGS84")
    lon: float = Field(ge=-180.0, le=180.0, description="degrees WGS84")
    alt: float = Field(default=0.0, ge=-500.0, le=9000.0, description="metres above mean sea level")


class TelemetrySection(StrictModel):
    """The MAVLink link to the flight controller (dronekit), owned by payload/vehicle/telemetry.py."""

    connection: str | None = Field(
        default=None,
        description="dronekit connection string: udp:127.0.0.1:14550 (listen), udpout:H:P, tcp:H:P, "
        "/dev/ttyAMA0 (serial, with baud); null = no link (detections are recorded and flagged)",
    )
    baud: int = Field(default=921600, ge=1200)
    connect_timeout_s: float = Field(default=30.0, gt=0, description="give up connecting after this")
    link_timeout_s: float = Field(default=3.0, gt=0, description="no message for this long = link lost")
    reconnect: bool = True
    reconnect_max_s: float = Field(default=10.0, gt=0, description="longest wait between reconnect attempts")
    gps_lag_s: float = Field(
        default=0.0,
        ge=0.0,
        le=2.0,
        description="how far GLOBAL_POSITION_INT lags the truth; ArduPilot's EKF output is already "
        "lag-compensated, raw-GPS autopilots want ~0.2",
    )
    buffer_s: float = Field(default=60.0, gt=1.0, description="seconds of telemetry kept for interpolation")
    timesync: bool = Field(default=True, description="also estimate the clock offset with MAVLink TIMESYNC")
    source_system: int = Field(default=255, ge=1, le=255)
    vehicle_sysid: int | None = Field(
        default=None,
        ge=1,
        le=255,
        description="MAVLink system id of OUR vehicle; messages from any other system (another drone on the "
        "same radio, a spoofer) are ignored. null = the system of the first HEARTBEAT heard",
    )
    source_component: int = Field(default=0, ge=0, le=255)
    frame: Literal["global", "local", "auto"] = Field(
        default="global",
        description="where positions come from: global = GLOBAL_POSITION_INT (GPS); local = LOCAL_POSITION_NED "
        "(optical flow, motion capture, visual odometry; no GPS needed); auto = local whenever the autopilot "
        "sends it and there is no 3D GPS fix",
    )
    frame_name: str = Field(
        default="local", min_length=1, max_length=40,
        description="name of the local frame written into every local record (e.g. the site's name)",
    )
    origin: OriginSection | None = Field(
        default=None,
        description="the EKF origin (lat, lon, alt) when the autopilot does not send GPS_GLOBAL_ORIGIN; with "
        "neither, local records carry metres east/north/up and no latitude/longitude",
    )
    signing: SigningSection | None = Field(
        default=None,
        description="MAVLink 2 signing (key_file, link_id, allow_unsigned); null = off: any packet carrying the "
        "vehicle's system id is believed",
    )


# The names of payload/geo/camerapresets.py PRESETS (config sits above geo in the rooms, so it cannot
# import them; tests/payload/test_camerapresets.py keeps the two lists equal)
CameraPresetName = Literal["rpi_cam_v2", "rpi_cam_v3", "rpi_hq_6mm", "mavic3m_rgb", "coral_camera"]


class CameraSection(StrictModel):
    """The camera's intrinsics and mount (payload/geo/camera.py, payload/geo/camerapresets.py).

    The geometry is given one way: a calibration (`K`), a documented `preset`, or the datasheet's
    `sensor_width_mm`/`sensor_height_mm`/`focal_length_mm` (the frame spans the sensor's full width);
    with none of them, the field of view `hfov_deg` (the historic default, which each of them overrides).
    """

    hfov_deg: float = Field(default=62.2, gt=0, lt=180, description="horizontal field of view (ideal camera)")
    preset: CameraPresetName | None = Field(
        default=None, description="a documented camera (payload/geo/camerapresets.py, docs/WORLD.md); overrides "
        "hfov_deg")
    sensor_width_mm: float | None = Field(default=None, gt=0, le=100, description="active sensor area width")
    sensor_height_mm: float | None = Field(default=None, gt=0, le=100, description="active sensor area height")
    focal_length_mm: float | None = Field(default=None, gt=0, le=1000, description="lens focal length")
    exposure_s: float | None = Field(
        default=None, gt=0, le=1.0, description="exposure time (motion blur = speed x exposure / GSD); for the record")
    width: int | None = Field(default=None, ge=1, description="calibrated image width; null = frame width")
    height: int | None = Field(default=None, ge=1, description="calibrated image height; null = frame height")
    K: list[list[float]] | None = Field(default=None, description="OpenCV 3x3 camera matrix; overrides hfov_deg")
    dist: list[float] = Field(default_factory=list, description="OpenCV distortion k1 k2 p1 p2 [k3 [k4 k5 k6]]")
    mount_rpy_deg: tuple[float, float, float] = Field(
        default=(0.0, 0.0, 0.0), description="mount roll, pitch, yaw from nadir (pitch + = looks forward)"
    )
    use_gimbal: bool = Field(default=False, description="take the mount angles from MOUNT_STATUS when present")

    @model_validator(mode="after")
    def _one_geometry(self) -> CameraSection:
        """Two geometries at once would leave one silently unused: say which to drop."""
        given = [n for n in ("sensor_width_mm", "sensor_height_mm", "focal_length_mm") if getattr(self, n) is not None]
        if given and len(given) < 3:
            missing = sorted({"sensor_width_mm", "sensor_height_mm", "focal_length_mm"} - set(given))
            raise ValueError(f"camera intrinsics need sensor_width_mm, sensor_height_mm and focal_length_mm together; "
                             f"add {', '.join(missing)} (or give a preset instead)")
        # like K, a preset or intrinsics override hfov_deg (the template config always carries one)
        ways = [w for w, on in (("preset", self.preset is not None), ("sensor_width_mm/focal_length_mm", bool(given)),
                                ("K", self.K is not None)) if on]
        if len(ways) > 1:
            raise ValueError(f"the camera is given {len(ways)} ways ({', '.join(ways)}); keep one of them")
        return self


class GeotagSection(StrictModel):
    """How detections are placed on the ground and when a pose is not trusted."""

    ground: Literal["home", "agl", "dem"] = Field(
        default="home", description="home: flat ground at home altitude; agl: fixed height_agl_m below the camera; "
        "dem: the terrain model in `dem` (docs/TERRAIN.md)"
    )
    height_agl_m: float | None = Field(default=None, gt=0, description="needed when ground is agl")
    dem: Path | None = Field(
        default=None, description="ground: dem: a single-band GeoTIFF of ground heights in metres above mean sea "
        "level (the autopilot's altitude datum), any CRS, covering the flight and its camera footprints")
    dem_vertical_offset_m: float = Field(
        default=0.0, ge=-200.0, le=200.0, description="added to every DEM height to bring it to the autopilot's "
        "altitude datum (e.g. minus the geoid undulation for a DSM in ellipsoidal heights)")
    dem_cell_m: float | None = Field(
        default=None, gt=0.1, le=100.0, description="grid the DEM is resampled to in the local frame (default: "
        "its own resolution)")
    max_pose_age_s: float = Field(default=0.5, gt=0, description="older poses are flagged pose_stale")
    min_height_agl_m: float = Field(
        default=5.0, ge=0, description="below this (take-off, landing) sightings are flagged below_min_height"
    )
    min_fix_type: int = Field(default=3, ge=0, le=6, description="GPS fix below this is flagged (3 = 3D)")
    max_hdop: float = Field(default=5.0, gt=0, description="HDOP above this is flagged")
    max_estimator_variance: float = Field(
        default=0.5, gt=0,
        description="local frame: an EKF_STATUS_REPORT/ESTIMATOR_STATUS position or velocity variance above "
        "this (normalised; 1 = failing) flags the pose estimator_unhealthy",
    )
    require_estimator_report: bool = Field(
        default=False,
        description="local frame: flag poses while no estimator report has been heard (off: absence is not "
        "evidence of a bad estimate; many autopilots do not stream it unless asked)",
    )


    @field_validator("dem")
    @classmethod
    def _dem_is_readable(cls, v: Path | None) -> Path | None:
        """Read the DEM's header now, so a wrong file is a config error naming it, not a mid-flight one."""
        if v is None:
            return None
        return check_dem(v).path

    @model_validator(mode="after")
    def _dem_when_ground_is_dem(self) -> GeotagSection:
        if self.ground == "dem" and self.dem is None:
            raise ValueError("ground is 'dem' but 'geotag.dem' (the terrain GeoTIFF) is not given; add it")
        return self


LayerFormat = Literal["geojson", "kml", "csv"]


def _all_layer_formats() -> list[LayerFormat]:
    return ["geojson", "kml", "csv"]


class SinksSection(StrictModel):
    """Output layers besides detections.jsonl (which is always written)."""

    formats: list[LayerFormat] = Field(default_factory=_all_layer_formats)
    layers_interval_s: float = Field(default=5.0, ge=0, description="rewrite the layers at most this often")
    crops: bool = Field(default=False, description="save a JPEG of each flagged tile with EXIF GPS tags")
    crop_quality: int = Field(default=90, ge=10, le=100)


class MapSection(StrictModel):
    """The ground evidence grid, its zones and coverage (payload/geo/grid.py, zones.py, diseasemap.py; docs/MAPS.md)."""

    cell_m: float = Field(default=0.5, gt=0.05, le=10.0,
                          description="grid cell size in metres (about a tenth of a tile's ground size)")
    chunk_cells: int = Field(default=64, ge=8, le=1024,
                             description="cells per side of a lazily allocated chunk of the grid")
    prior_logodds: float = Field(default=-2.0, ge=-10.0, le=0.0,
                                 description="log-odds of each disease against healthy before any look (rare)")
    clamp_logodds: float = Field(default=8.0, gt=0.0, le=8.18,
                                 description="a cell's evidence stays within +-this, so it can change its mind")
    decorrelation_m: float = Field(
        default=1.0, gt=0.0,
        description="camera travel over which consecutive views count as one independent look: a frame's "
        "evidence is weighted by min(1, distance moved since the previous frame / this), so a hover adds "
        "almost nothing and the frame rate does not change the map",
    )
    explain_away: bool = Field(
        default=True,
        description="a disease call's evidence goes to the tile's cells by their current probability, not "
        "evenly: ground seen only beside a patch stops growing its zone (docs/MAPS.md)",
    )
    zone_threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="posterior probability of a disease from which a cell belongs to a zone (recall first)",
    )
    min_zone_area_m2: float = Field(default=1.0, ge=0.0, description="smaller connected areas are not zones")
    zones_every_frames: int = Field(default=10, ge=1, le=10000,
                                    description="zones are re-extracted (and new ones alerted) every this many frames")
    coverage_min_looks: int = Field(default=3, ge=1, le=15,
                                    description="the 'well seen' coverage layer: cells seen at least this often")
    pose_sigma_m: float = Field(default=1.0, ge=0.0,
                                description="1-sigma horizontal error of a trusted pose, added to each zone's "
                                "position uncertainty")
    rasters: bool = Field(default=True, description="write GeoTIFF rasters (probability per disease, look count) "
                          "at the end of the run and in `payload export`")


def _site_map_defaults() -> MapSection:
    """Map settings at the scale of plants on a shelf (a rack face is seen from 1-3 m, not 30 m)."""
    return MapSection(cell_m=0.06, decorrelation_m=0.25, min_zone_area_m2=0.03, pose_sigma_m=0.1,
                      zones_every_frames=10, rasters=False)


class SiteSection(StrictModel):
    """An indoor farm's layout (payload/geo/site.py, docs/INDOOR.md): rays meet rack faces, maps live on them."""

    file: Path = Field(description="site YAML file: racks (position, heading, length, shelves, bays), names")
    map: MapSection = Field(
        default_factory=_site_map_defaults,
        description="the evidence grid of each rack face (along, up metres): same model as `map`, plant scale",
    )

    @field_validator("file")
    @classmethod
    def _site_file_is_valid(cls, v: Path) -> Path:
        """Read the site file now, so a wrong rack is a config error naming the site file, not a mid-flight one."""
        path = v.expanduser().absolute()
        load_site(path)
        return path


class MosaicSection(StrictModel):
    """The quick mosaic: the flight's frames on flat ground (payload/geo/mosaic.py, sinks/mosaic.py; docs/MAPS.md)."""

    enabled: bool = Field(default=True,
                          description="write mosaic.tif, mosaic.png and mosaic.json at the end of the run")
    m_per_px: float = Field(default=0.15, ge=0.05, le=1.0,
                            description="ground size of a mosaic pixel (10-20 cm shows plants and patches; finer "
                            "costs memory and disk as the square)")
    every_n_frames: int = Field(default=3, ge=1, le=1000,
                                description="use every n-th trusted frame (at 5 fps and 5 m/s consecutive frames "
                                "overlap by over 95 %)")
    max_tiles_in_memory: int = Field(default=48, ge=4, le=4096,
                                     description="256x256 tiles kept in memory (256 KiB each); colder tiles wait on "
                                     "disk beside the outputs until the end of the run")
    png_max_px: int = Field(default=2048, ge=256, le=16384,
                            description="mosaic.png is the mosaic shrunk by a power of two to at most this many pixels "
                            "on its longer side")


class ReportSection(StrictModel):
    """report.html, the field report written at the end of the run and by `payload export` (payload/report/)."""

    enabled: bool = True
    crops_per_zone: int = Field(default=6, ge=0, le=50, description="evidence crops shown for each zone")
    crop_px: int = Field(default=112, ge=32, le=512, description="longer side of a crop in the report")
    map_max_px: int = Field(default=1600, ge=256, le=8192,
                            description="longer side of the mosaic and probability images embedded in the map")


RxFormat = Literal["shp", "gpkg", "isoxml"]


def _all_rx_formats() -> list[RxFormat]:
    return ["shp", "gpkg", "isoxml"]


class TerminalSection(StrictModel):
    """What a strict sprayer terminal accepts (docs/PRESCRIPTIONS.md): checked before any file is written."""

    short_names: bool = Field(
        default=False,
        description="8.3 upper-case file names in the Shapefile zip (PRESCRIP.SHP ...): terminals that read a "
        "USB stick with a FAT driver from the 1990s",
    )
    max_zones: int | None = Field(
        default=None, ge=1, le=100000,
        description="most treatment zones the terminal loads (Agrotax AgFusion: 100); null = no limit",
    )
    on_too_many: Literal["merge", "refuse"] = Field(
        default="merge",
        description="more zones than max_zones: merge the nearest zones of a class until they fit (the sprayer "
        "treats the ground between them; said in the log and prescription.json), or refuse and write no "
        "prescription",
    )


class PrescriptionSection(StrictModel):
    """Treatment zones, the scout list and the terminal files (payload/grower/, sinks/prescription.py;
    docs/PRESCRIPTIONS.md). Written at the end of the run and by `payload export --prescription`."""

    enabled: bool = Field(default=True, description="write the prescription files at the end of the run")
    margin_m: float = Field(default=5.0, ge=0.0, le=100.0,
                            description="agronomic margin: every disease zone is treated this far beyond its edge")
    rates: dict[str, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=dict,
        description="application rate per disease class (in `unit`), e.g. {rust: 1.2, powdery_mildew: 0.8}; a "
        "class not listed gets default_rate; ground outside every treatment zone gets 0",
    )
    default_rate: float = Field(default=1.0, ge=0.0,
                                description="rate of a class missing from `rates` (1.0: an on/off map)")
    unit: Literal["l/ha", "kg/ha"] = Field(
        default="l/ha", description="unit of the rates (ISO-XML: l/ha is DDI 1, kg/ha is DDI 6)")
    products: dict[str, str] = Field(
        default_factory=dict,
        description="product name per disease class (ISO-XML product designator); default '<class> treatment'",
    )
    priority: list[str] = Field(
        default_factory=list,
        description="where treatment zones of two classes overlap, the earlier class's product is applied "
        "(a disease zone itself always keeps its own class); default: higher rate first, then the model's "
        "class order",
    )
    max_vertices: int = Field(default=64, ge=8, le=100000,
                              description="vertex budget per treatment zone (all its rings); the outline is "
                              "simplified outwards until it fits, never into the disease zone")
    min_zone_m2: float = Field(default=1.0, ge=0.0,
                               description="treatment zone pieces smaller than this (slivers left where "
                               "classes meet) are dropped")
    grid_cell_m: float | None = Field(
        default=None, gt=0.5, le=100.0,
        description="also write a grid prescription of square cells this size (spot-spray drones); null = none",
    )
    taskdata: Literal["zones", "grid"] = Field(
        default="zones", description="ISO-XML TASKDATA as treatment-zone polygons or as a grid (needs grid_cell_m)")
    scout_threshold: float = Field(
        default=0.2, gt=0.0, lt=1.0,
        description="ground whose disease probability reaches this but not map.zone_threshold (or a zone "
        "smaller than map.min_zone_area_m2) goes on the scout list",
    )
    scout_min_gap_m2: float = Field(default=25.0, ge=0.0,
                                    description="unseen parts of the flown area at least this large (and 2 m "
                                    "wide) go on the scout list")
    formats: list[RxFormat] = Field(default_factory=_all_rx_formats,
                                    description="shp: prescription.zip, gpkg: zones.gpkg, isoxml: TASKDATA/")
    terminal: TerminalSection = TerminalSection()

    @field_validator("taskdata")
    @classmethod
    def _grid_needs_a_cell(cls, v: str, info) -> str:  # noqa: ANN001 - pydantic's ValidationInfo
        """A grid TASKDATA without a cell size is a config error, not a surprise at the end of a flight."""
        if v == "grid" and info.data.get("grid_cell_m") is None:
            raise ValueError("taskdata: grid needs prescription.grid_cell_m (e.g. 5)")
        return v


class AlertsSection(StrictModel):
    """Live STATUSTEXT to the ground station, once per confirmed zone."""

    enabled: bool = True
    severity: Literal["EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG"] = "WARNING"
    min_interval_s: float = Field(default=5.0, ge=0, description="at most one alert per this many seconds")


class PreflightSection(StrictModel):
    """Checks before the first frame."""

    min_free_disk_mb: float = Field(default=500.0, ge=0)
    strict: bool = Field(default=False, description="refuse to start when a check fails (else warn and fly)")
    wait_fix_s: float = Field(default=0.0, ge=0, description="wait this long for a GPS fix before reporting")


class PayloadConfig(StrictModel):
    """The whole payload configuration."""

    model: ModelSection
    source: SourceSection = SourceSection()
    tiling: TilingSection = TilingSection()
    scheduler: SchedulerSection = SchedulerSection()
    output: OutputSection = OutputSection()
    telemetry: TelemetrySection = TelemetrySection()
    camera: CameraSection = CameraSection()
    geotag: GeotagSection = GeotagSection()
    sinks: SinksSection = SinksSection()
    map: MapSection = MapSection()
    site: SiteSection | None = None
    mosaic: MosaicSection = MosaicSection()
    report: ReportSection = ReportSection()
    prescription: PrescriptionSection = PrescriptionSection()
    alerts: AlertsSection = AlertsSection()
    preflight: PreflightSection = PreflightSection()


def load_payload_config(path: str | Path) -> PayloadConfig:
    """Load and validate a payload YAML file (raises ConfigError with a readable message)."""
    return load_config(path, PayloadConfig)
