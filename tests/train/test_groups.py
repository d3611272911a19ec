"""Groups files: ChaLearn's eth/gender CSV as shipped, plain CSVs, and files that are refused."""

import numpy as np
import pytest

from train.groups import GroupsError, read_groups, video_key

CHALEARN_ROWS = "VideoName;YouTubeID;Ethnicity;Gender\n_01AyUz9J9I.002.mp4;_01AyUz9J9I;2;1\n-6otZ7M-Mro.005.mp4;-6otZ7M-Mro;3;2\nAbc.001;Abc;1;2\n"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_chalearns_file_is_read_as_shipped_with_codes_named(tmp_path):
    table = read_groups([write(tmp_path / "eth_gender_annotations_test.csv", CHALEARN_ROWS)])
    assert set(table.columns) == {"Ethnicity", "Gender"}  # YouTubeID names the source, not a group
    groups = table.for_videos(np.array(["_01AyUz9J9I.002.mp4", "-6otZ7M-Mro.005", "Abc.001.mp4", "other.mp4"]))
    assert list(groups["Ethnicity"]) == ["Caucasian", "African-American", "Asian", None]
    assert list(groups["Gender"]) == ["male", "female", "female", None]
    assert table.unmatched(np.array(["Abc.001.mp4", "other.mp4"])) == 1


def test_any_csv_with_video_id_keeps_its_values_as_written(tmp_path):
    path = write(tmp_path / "groups.csv", "video_id,age band,site\na.mp4,18-30,2\nb.mp4,31-50,\nc.mp4,18-30,1\n")
    groups = read_groups([path]).for_videos(np.array(["a.mp4", "b.mp4", "c"]))
    assert list(groups["age band"]) == ["18-30", "31-50", "18-30"]
    assert list(groups["site"]) == ["2", None, "1"]  # an empty cell: no group in that column


def test_several_files_merge_and_may_not_disagree(tmp_path):
    dev = write(tmp_path / "dev.csv", CHALEARN_ROWS)
    test = write(tmp_path / "test.csv", "VideoName;YouTubeID;Ethnicity;Gender\nNew.000.mp4;New;1;1\n")
    table = read_groups([dev, test])
    assert table.columns["Gender"]["New.000"] == "male" and table.columns["Gender"]["Abc.001"] == "female"
    other = write(tmp_path / "other.csv", "VideoName;YouTubeID;Ethnicity;Gender\nAbc.001.mp4;Abc;1;1\n")
    with pytest.raises(GroupsError, match=r"other\.csv: video Abc\.001 is in Gender group 'male' here and 'female'"):
        read_groups([dev, other])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\x02binary\xff\xfe", r"bad\.csv: not a CSV file \(binary content\)"),
        (b"PK\x03\x04\x00\x00zip", r"bad\.csv: not a CSV file \(binary content\)"),
        (b"name,score\na,1\n", r"bad\.csv: no recognisable header \(got 'name;score'\); expected ChaLearn's"),
        (b"video_id\na.mp4\n", r"bad\.csv: no recognisable header"),
        (b"", r"bad\.csv: empty groups file"),
        (b"VideoName;YouTubeID;Ethnicity;Gender\na.mp4;a;4;1\n", r"bad\.csv:2: Ethnicity code '4' is not one of"),
        (b"video_id,group\na.mp4,x\na.mp4,y\n", r"bad\.csv:3: video a is in group group 'x' on an earlier row"),
        (b"video_id,group\na.mp4,x,extra\n", r"bad\.csv:2: 3 fields where the header has 2"),
    ],
)
def test_files_that_are_no_groups_file_are_refused_naming_the_file_and_the_fix(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(GroupsError, match=message):
        read_groups([path])


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(GroupsError, match=r"absent\.csv: no such groups file"):
        read_groups([tmp_path / "absent.csv"])


def test_ids_match_with_or_without_the_extension():
    assert video_key("_01AyUz9J9I.002.mp4") == video_key("_01AyUz9J9I.002") == "_01AyUz9J9I.002"
    assert video_key("clip.MP4") == "clip"
